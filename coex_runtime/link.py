"""Phase 2 of an install: link packages' files from the package cache into the prefix, one file
at a time as conda and rattler do (hardlink, copy, symlink, or a copy with the prefix
placeholder replaced), each giving its linked-file record: the ``paths_data`` entry of the
package's conda-meta record."""

import errno
import hashlib
import os
import stat

from coex_runtime import noarch, prefix as prefixmod
from coex_runtime.errors import InstallError
from coex_runtime.format import Package
from coex_runtime.fs import copy_hashed, remove, set_mode, umask, write_all, write_file
from coex_runtime.pkgmeta import check_link_target, manifest_name

_NO_HARDLINK = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES, getattr(errno, "ENOTSUP", errno.EPERM))


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


# conda-meta ``link.type``: how conda links a package's files (conda.models.enums.LinkType);
# conda records the type it asked for (hardlink where the package cache and the prefix share a
# file system, else copy), not what each file got (files with a prefix placeholder are copies)
LINK_HARDLINK, LINK_COPY = 1, 3


class Linker(object):
    """Links packages into ``staging``, which the caller renames to ``final_prefix`` (what the
    placeholders become). One thread: linking is a few syscalls per file, and threads (or forked
    workers, with their results sent back) were measured slower.

    The records it returns are conda's (conda 23's ``LinkPathAction``/``PrefixReplaceLinkAction``
    ``prefix_path_data``), path by path:

    * a file linked as it is: the package's ``sha256`` and ``size_in_bytes`` and
      ``sha256_in_prefix`` (the same digest: ``conda doctor`` checks files against it; rattler
      0.25 writes no ``sha256_in_prefix`` here);
    * a file with its prefix placeholder replaced: the package's ``sha256`` and ``size_in_bytes``
      (rattler writes the size in the prefix), ``sha256_in_prefix`` of the bytes written,
      ``file_mode``, ``prefix_placeholder``;
    * a symlink: the package's ``sha256`` and ``size_in_bytes`` (those of the file it points to,
      as paths.json gives them) and no ``sha256_in_prefix`` (rattler's, the digest of the link's
      target path, would make ``conda doctor`` report the link as altered, since it hashes the
      file the link points to);
    * an old package without paths.json: only what info/files + info/has_prefix say (the
      ``sha256_in_prefix`` of a prefix-replaced file aside), as conda (rattler computes digests);
    * a console script of a noarch: python package: ``_path`` and ``path_type`` alone.
    """

    def __init__(self, staging, final_prefix, pyver):  # type: (str, str, Optional[str]) -> None
        self.staging, self.final_prefix, self.pyver = staging, final_prefix, pyver
        self.made = set()       # directories known to exist
        self.hardlinks = None   # can the package cache be hardlinked into staging? (first use)
        umask(refresh=True)     # before any thread creates files (see fs.umask)

    @property
    def link_type(self):  # type: () -> int
        """What conda-meta records as ``link.type`` (see LINK_HARDLINK)."""
        return LINK_COPY if self.hardlinks is False else LINK_HARDLINK

    def probe_hardlinks(self, pkgdir):  # type: (str) -> bool
        """Whether files of the package cache can be hardlinked into staging (asked once: a
        link of ``pkgdir/info/index.json`` made and removed), as conda decides its link type."""
        if self.hardlinks is None:
            probe = os.path.join(self.staging, ".coex-hardlink-probe")
            try:
                os.link(os.path.join(pkgdir, "info", "index.json"), probe)
                os.unlink(probe)
                self.hardlinks = True
            except OSError as e:
                if e.errno not in _NO_HARDLINK:
                    raise
                self.hardlinks = False
        return self.hardlinks

    def link_package(self, plan):  # type: (plan.Plan) -> List[dict]
        """The records of one package's files and console scripts; those another package wins
        (not in ``plan.owned``) are recorded but not linked."""
        pkg = Package(plan.entry).label
        self.probe_hardlinks(plan.pkgdir)
        stats = plan.stats
        out = [self.link_file(pkg, plan.pkgdir, p, target, target in plan.owned, stats.get(p["_path"]))
               for p, target in zip(plan.paths, plan.targets)]
        for name, module, func in plan.entry_points:
            target = "bin/" + name
            if target in plan.owned:
                data = noarch.entry_point_script(self.final_prefix, self.pyver, module, func)
                self._write(target, data, 0o755 & ~umask())  # as conda: the umask applies
            out.append({"_path": target, "path_type": "unix_python_entry_point"})
        return out

    def link_file(self, pkg, pkgdir, p, target, owned=True, st=None):
        # type: (str, str, dict, str, bool, Optional[os.stat_result]) -> dict
        """Put the file of paths.json entry ``p`` (of the package ``pkg`` at ``pkgdir``) at
        ``target`` (unless not ``owned``); its record (see the class). ``st``: the source's
        lstat when the package's check already took it."""
        src = os.path.join(pkgdir, p["_path"])
        dst = os.path.join(self.staging, target)
        pt = p.get("path_type", "hardlink")
        rec = {"_path": target, "path_type": pt}
        if pt == "directory":
            if owned and not os.path.isdir(dst):
                os.makedirs(dst, exist_ok=True)
            return rec
        if owned:
            self._mkparent(target)
        try:
            if st is None:
                st = os.lstat(src)
        except OSError as e:
            raise InstallError("%s: %s lists %s, but the package does not contain it"
                               % (pkg, manifest_name(pkgdir), p["_path"])) from e
        for key in ("sha256", "size_in_bytes"):
            if p.get(key) is not None:
                rec[key] = p[key]
        if pt == "softlink" or stat.S_ISLNK(st.st_mode):
            if not stat.S_ISLNK(st.st_mode):
                raise InstallError("%s: info/paths.json lists %s as a softlink, but it is a "
                                   "regular file in the package" % (pkg, p["_path"]))
            link_target = os.readlink(src)
            check_link_target(pkg, target, link_target)
            if owned:
                remove(dst)
                os.symlink(link_target, dst)
            rec["path_type"] = "softlink"
            return rec
        if not stat.S_ISREG(st.st_mode):
            raise InstallError("%s: %s is not a regular file" % (pkg, p["_path"]))
        placeholder = p.get("prefix_placeholder")
        mode = p.get("file_mode") or ("text" if placeholder else None)
        if mode not in (None, "text", "binary"):
            raise InstallError("%s: info/paths.json gives %s the unknown file_mode %r (known: "
                               "text, binary)" % (pkg, p["_path"], mode))
        if placeholder:
            rec["file_mode"] = mode
            rec["prefix_placeholder"] = placeholder
        elif p.get("sha256"):
            rec["sha256_in_prefix"] = p["sha256"]
        if p.get("no_link"):
            rec["no_link"] = True
        if not owned:
            return rec
        fmode = stat.S_IMODE(st.st_mode)
        if placeholder:
            with open(src, "rb") as f:
                data = f.read()
            ph, new_prefix = placeholder.encode("utf-8"), self.final_prefix.encode("utf-8")
            if mode == "binary":
                data = prefixmod.replace_binary(data, ph, new_prefix, "%s: %s" % (pkg, target))
            else:
                data = prefixmod.replace_text(data, ph, new_prefix)
            self._write(target, data, fmode)
            rec["sha256_in_prefix"] = _sha256(data)
        elif p.get("no_link") or not self.hardlinks:
            remove(dst)
            _copy(src, dst, fmode)
        else:
            try:
                os.link(src, dst)
            except OSError as e:
                if e.errno == errno.EEXIST:
                    remove(dst)
                    os.link(src, dst)
                elif e.errno in _NO_HARDLINK:  # this file only (too many links, ...): a copy
                    _copy(src, dst, fmode)
                else:
                    raise
        return rec

    def link_from(self, src, target):  # type: (str, str) -> None
        """Put the file ``src`` (in the package cache) at ``target`` as package files go:
        a hardlink where they are hardlinks, else a copy."""
        self._mkparent(target)
        dst = os.path.join(self.staging, target)
        remove(dst)
        if self.hardlinks:
            try:
                os.link(src, dst)
                return
            except OSError as e:
                if e.errno not in _NO_HARDLINK:
                    raise
        _copy(src, dst, stat.S_IMODE(os.stat(src).st_mode))

    def _mkparent(self, rel):
        parent = os.path.dirname(rel)
        if not parent or parent in self.made:
            return
        full = os.path.join(self.staging, parent)
        try:
            os.makedirs(full)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise
            if not os.path.isdir(full):
                raise InstallError("cannot create directory %s: a file of that name is in the way"
                                   % parent) from e
        self.made.add(parent)

    def _write(self, target, data, mode):
        """A new file at ``target`` holding ``data``, mode exactly ``mode``."""
        self._mkparent(target)
        dst = os.path.join(self.staging, target)
        remove(dst)
        write_file(dst, data, mode)


def _copy(src, dst, mode):
    """Copy ``src`` to ``dst`` (sendfile, else read/write), mode exactly ``mode``, src's times."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        set_mode(fd, mode)
        with open(src, "rb") as f:
            sfd = f.fileno()
            size = os.fstat(sfd).st_size
            done = 0
            sendfile = getattr(os, "sendfile", None)
            if sendfile is not None:
                try:
                    while done < size:
                        k = sendfile(fd, sfd, done, min(size - done, 1 << 30))
                        if k == 0:
                            break
                        done += k
                except OSError:
                    done = -1
            if done != size:
                f.seek(0)
                os.lseek(fd, 0, 0)
                os.ftruncate(fd, 0)
                copy_hashed(f, lambda block: write_all(fd, block))
        st = os.stat(src)
        os.utime(fd if os.utime in os.supports_fd else dst, ns=(st.st_atime_ns, st.st_mtime_ns))
    finally:
        os.close(fd)

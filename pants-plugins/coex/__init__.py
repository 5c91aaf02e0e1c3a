"""coex: a Pants backend that turns a locked conda environment plus in-repo sources into one
self-extracting executable (`coex_binary`)."""

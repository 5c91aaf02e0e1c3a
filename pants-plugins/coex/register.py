def target_types():
    return []


def rules():
    return []

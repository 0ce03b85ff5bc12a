"""passthrough: accepts every trigger exactly as received (the Python twin of plugins/passthrough).

The smallest useful plugin, and the baseline for measuring what a Python plugin costs per trigger: the verdict
carries no body, so nothing is copied back out of the instance.
"""

import weir_plugin as weir


def handle(_trigger):
    return weir.accept_unchanged()


WitWorld = weir.export(handle)

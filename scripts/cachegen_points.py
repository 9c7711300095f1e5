"""cachegen settings shared by scripts/make-results.py and scripts/cachegen-defaults.py.

Every setting is a "k=v k=v" string for `kvscope-cli sweep --point`, applied on top of the codec's
defaults. The old (layout version 2) default is spelled out in full, so it stays the same point when the
defaults change."""

# The default before issue #14 (docs/cachegen-defaults.md of 2026-11-28), every new feature off.
OLD_DEFAULT = ("key_bins=16,24,24 key_layer_splits=10,20 value_bins=16,10 value_layer_splits=2 scale=token "
               "sinks=0 delta_mode=integer step_coding=fp16 table_bits=16")


def parse_point(text):
    """'k=v k=v' -> dict."""
    return dict(kv.split("=", 1) for kv in text.split() if kv)


def point_text(d):
    return " ".join(f"{k}={v}" for k, v in d.items())


def with_(base, **changes):
    """`base` point text with some parameters replaced (underscores in names stay)."""
    d = parse_point(base)
    d.update({k: str(v) for k, v in changes.items()})
    return point_text(d)


def differs(point, reference):
    """The parameters of `point` that differ from `reference` (both point texts), as 'k=v' text."""
    a, b = parse_point(point), parse_point(reference)
    return " ".join(f"{k}={v}" for k, v in a.items() if b.get(k) != v) or "(same)"


# The targets of issue #14 (held-out mean at 1024 tokens, every side information counted).
TARGETS = {"a_bits": 2.31, "a_kl": 0.01, "a_top1": 0.95, "b_bits": 1.8, "b_kl": 0.05}

# Held-out rate-distortion grid: the defaults ("") first, then other points.
RD_POINTS = [""]

# (label, point): each feature alone, on the old default and off the new one.
ABLATION = [("previous default (layout version 2)", OLD_DEFAULT)]

# (label, point) measured at 2048 tokens with 256 scored.
FINAL_POINTS = [("cachegen defaults", ""), ("previous default", OLD_DEFAULT)]

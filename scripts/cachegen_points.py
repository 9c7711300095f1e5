# SPDX-License-Identifier: Apache-2.0
"""cachegen settings shared by scripts/make-results.py and scripts/cachegen-defaults.py.

Every setting is a "k=v k=v" string for `kvscope-cli sweep --point`, applied on top of the codec's
defaults. The old (layout version 2) default is spelled out in full, so it stays the same point when the
defaults change."""

# The default before issue #14 (docs/cachegen-defaults.md of 2026-11-28), every new feature off. Points
# below spell out every parameter they depend on, so changing the codec's defaults does not move them.
OLD_DEFAULT = ("key_bins=16,24,24 key_layer_splits=10,20 value_bins=16,10 value_layer_splits=2 scale=token "
               "group_size=10 delta=auto sinks=0 delta_mode=integer anchor_bins=256 step_coding=fp16 "
               "table_bits=16 key_space=post_rope channel_weighting=off reconstruction=0")


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

# The default's per-layer bins (core/codec/src/cachegen_params.cpp): the plan at level 2.9 of the layer
# sensitivity measured at the defaults (keys before RoPE, channel weighting, centroid reconstruction;
# docs/results/tune/sensitivity-defaults.kvssens).
PLAN_BINS = ("key_bins=18,22,42,14,20,20,24,30,34,26,42,22,24,14,22,36,16,32,64,28,48,20,24,62,34,18,32,14,18,12 "
             "key_layer_splits= value_bins=20,14,16,12,10,22,20,12,32,12,12,8,8,8,8,10,8,16,18,8,16,12,8,18,14,8,8,8,"
             "8,8 value_layer_splits=")
# The default's bins until 2026-12-07: the plan at level 2.9 of the first sensitivity (keys after RoPE, no
# channel weighting; docs/results/tune/sensitivity.kvssens).
PREVIOUS_PLAN_BINS = ("key_bins=12,16,20,16,14,26,16,22,28,30,84,18,38,24,32,36,22,28,48,34,44,32,46,66,44,32,48,"
                      "26,24,18 key_layer_splits= value_bins=14,10,10,10,10,10,14,10,16,10,10,10,10,10,10,10,10,10,"
                      "10,10,10,10,10,12,10,10,10,10,10,10 value_layer_splits=")
_OLD = with_(OLD_DEFAULT, profile="")
_NEW_SHIPPED = "profile="  # the defaults with their tables shipped in the stream

# Held-out rate-distortion grid: the defaults first ("" = every default, tables from the calibration where
# smaller), then plans at other levels via --plan-level, each with tables from a calibration counted at its
# own bins (make-results builds one per level) where smaller.
RD_POINTS = ["", _NEW_SHIPPED]
RD_PLAN_LEVELS = ["2.3", "2.6", "3.2", "3.5", "3.8"]

# (label, point): each feature alone on the previous default, then each removed from the new default. The
# new default itself (with and without the calibration's tables) is RD_POINTS, measured once in the front.
ABLATION_BASE = [("previous default (layout version 2)", _OLD)]
ABLATION_ADD = [
    ("+ sinks=1", with_(_OLD, sinks=1)),
    ("+ step_coding=coded", with_(_OLD, step_coding="coded")),
    ("+ table_bits=10", with_(_OLD, table_bits=10)),
    ("+ key_space=pre_rope", with_(_OLD, key_space="pre_rope")),
    ("+ per-layer plan (level 2.9)", _OLD + " " + PLAN_BINS),
]
ABLATION_NEW = [("new default", ""), ("new default, tables shipped (no calibration)", _NEW_SHIPPED)]
ABLATION_REMOVE = [
    ("... and reconstruction=0 (bin midpoints)", _NEW_SHIPPED + " reconstruction=0"),
    ("... and channel_weighting=off", _NEW_SHIPPED + " channel_weighting=off"),
    ("... and sinks=0", _NEW_SHIPPED + " sinks=0"),
    ("... and key_space=post_rope", _NEW_SHIPPED + " key_space=post_rope"),
    ("... and the previous group bins", _NEW_SHIPPED + " key_bins=16,24,24 key_layer_splits=10,20 value_bins=16,10 "
                                                       "value_layer_splits=2"),
    ("... and the previous plan (sensitivity of keys after RoPE)", _NEW_SHIPPED + " " + PREVIOUS_PLAN_BINS),
]
# (step_coding and table_bits do not change the quantized values, and float deltas cost 1.3-2.4 bits more on
# TUNE: docs/cachegen-defaults.md; the held-out ablation leaves delta_mode=float out to fit the shared machine's
# time.)

# (label, point) measured at 2048 tokens with 256 scored.
# (The plan at level 3.5 is measured at 1024 tokens only, in the front: each 2048-token point costs about 3
# CPU-minutes on the shared build machine.)
FINAL_POINTS = [("cachegen defaults", ""), ("cachegen, previous default", _OLD)]

# The measurements behind the defaults, on the TUNE split (scripts/cachegen-defaults.py):
# (name, title, explanation, points, extra sweep arguments). Tables are shipped (profile=) throughout.
_Q = with_(OLD_DEFAULT, sinks=1, profile="")
_SIDE = with_(_Q, step_coding="coded", table_bits=10)
_PLAN_BASE = ("scale=token group_size=10 delta=auto sinks=1 delta_mode=integer anchor_bins=256 step_coding=coded "
              "table_bits=10 profile= channel_weighting=off reconstruction=0")
# The layer sensitivity: 512 context tokens, 64 scored, to keep its 1 + 2 x 30 evaluations per context affordable
# on the shared build machine (it is a relative measure: which layers matter more); keys after RoPE.
SENSITIVITY_TOKENS, SENSITIVITY_SCORED = 512, 64
SENSITIVITY_ARGS = ["--set", "sinks=1", "--set", "step_coding=coded", "--set", "table_bits=10", "--set",
                    "key_space=post_rope", "--set", "profile=", "--base-bins", "32", "--coarse-bins", "10"]
PLAN = ["--sensitivity", "@SENSITIVITY@"]
# The layer sensitivity at the defaults (what the default bins and the held-out plans of docs/results.md are
# planned from): keys before RoPE, the calibrated channel weighting, centroid reconstruction, the calibration's
# tables where they fit, 1024 context tokens and 128 scored like every TUNE study.
DEFAULTS_SENSITIVITY_FILE = "sensitivity-defaults.kvssens"
DEFAULTS_SENSITIVITY_ARGS = ["--base-bins", "32", "--coarse-bins", "10"]
DEFAULTS_PLAN = ["--sensitivity", "@SENSITIVITY_DEFAULTS@"]
TUNE_STUDIES = [
    ("sinks", "Attention sinks (`sinks`)",
     "The previous default with the first N tokens of the cache stored exactly (f16). Token 0 draws 40-60% of "
     "the attention in most layers (the app's Attention view), so its quantization error is amplified; one "
     "sink costs 16 bits per value of one token (0.016 bits/element at 1024 tokens). One sink halves the mean "
     "KL on two of the three contexts; more sinks add bits and nothing else: `sinks=1`.",
     [with_(OLD_DEFAULT, sinks=n, profile="") for n in (0, 1, 2, 4, 16)], []),
    ("side", "Side information (`step_coding`, `table_bits`) and delta mode (`delta_mode`)",
     "Same quantized values (sinks=1) stored with fewer side bits: steps range coded instead of f16 (lossless), "
     "shipped symbol tables with fewer bits of precision per frequency (the payload does not grow measurably). "
     "Last two rows: the paper's float deltas (anchors on anchor_bins, other tokens quantize their change from "
     "the decoded anchor): adjacent tokens correlate too little on this model for the change to be cheaper "
     "than the value, and the 255-level anchor tables are large, so they cost 1.3-2.4 bits more for a slightly "
     "lower KL. Defaults: `step_coding=coded`, `table_bits=10`, `delta_mode=integer`.",
     [with_(_Q, step_coding=st, table_bits=tb) for st, tb in (("fp16", 16), ("coded", 16), ("fp16", 12),
                                                              ("fp16", 10), ("coded", 12))]
     + [with_(_Q, delta_mode="float", anchor_bins=ab) for ab in (64, 256)], []),
    ("key-space", "Keys before RoPE (`key_space`)",
     "The previous default's bins with one sink and the smaller side information, keys coded as cached (after "
     "RoPE) or with RoPE removed (re-applied after decoding). Pre-RoPE keys are mostly a constant offset per "
     "channel, which the per-channel tables absorb: 8% fewer bits at a lower KL, and the worst context's KL "
     "falls from 0.094 to 0.057. Default: `key_space=pre_rope`.",
     [with_(_SIDE, key_space=ks) for ks in ("post_rope", "pre_rope")], []),
    ("plans-post", "Layer plans, keys after RoPE",
     "Per-layer bins planned from the layer sensitivity above at levels 2.6-3.5 (`--plan-level`; each level "
     "adds about 0.3 bits per element), keys after RoPE. At level 2.6 the plan gives the previous default's KL "
     "(0.055 against 0.058) with 0.09 fewer bits.",
     [_PLAN_BASE + " key_space=post_rope"], PLAN + [x for lv in ("2.6", "2.9", "3.2", "3.5") for x in
                                                     ("--plan-level", lv)]),
    ("plans-pre", "Layer plans, keys before RoPE",
     "The same plans with keys before RoPE: the default is level 2.9 (with its tables from the model's "
     "calibration where that is smaller, it lands under 2.31 bits per element, 3.5x smaller than int8). The "
     "KL falls about 1.6x per 0.3 levels (0.3 bits); KL <= 0.01 needs about level 3.5 here.",
     [_PLAN_BASE + " key_space=pre_rope"], PLAN + [x for lv in ("2.3", "2.6", "2.9", "3.2") for x in
                                                    ("--plan-level", lv)]),
    ("channel-weighting", "Channel weighting (`channel_weighting`)",
     "The same plans (keys before RoPE) with and without the calibrated channel weighting: key channels that "
     "the queries read strongly get finer steps, the others coarser, with M scaled so the keys spend about the "
     "same bits (docs/bitstream.md, cachegen \"Version 4\"). The weighting comes from `kvscope-cli calibrate "
     "--context` on the TUNE contexts (power 0.5 on the keys' query energies; values unweighted: weighting them "
     "by the output projection measured no better in a prototype). Tables are shipped in both arms. At equal "
     "bits the weighted plans have 1.2-1.4x lower KL from level 3.1 up. Default: `channel_weighting=calibrated` "
     "(used when the model's calibration has a weighting; streams are then layout version 4).",
     [_PLAN_BASE.replace("channel_weighting=off", "channel_weighting=" + cw) + " key_space=pre_rope"
      for cw in ("off", "calibrated")],
     PLAN + [x for lv in ("2.9", "3.1", "3.3", "3.5", "3.7") for x in ("--plan-level", lv)]),
    ("rounding", "Dead-zone rounding (`rounding`)",
     "The weighted plans with values rounded to the next level only past `rounding` of a step (0.5 = to "
     "nearest; lower sends more zeros, the decoder is unchanged). It saves 0.04-0.08 bits per element but "
     "raises the KL more than those bits buy back at every level from 3.2 up (at level 2.9 about even), so the "
     "default stays `rounding=0.5`; the parameter is there to tune.",
     [_PLAN_BASE.replace("channel_weighting=off", "channel_weighting=calibrated") + " key_space=pre_rope rounding="
      + r for r in ("0.5", "0.45", "0.4")],
     PLAN + [x for lv in ("2.9", "3.2", "3.5") for x in ("--plan-level", lv)]),
    ("reconstruction", "Centroid reconstruction (`reconstruction`)",
     "The weighted plans (keys before RoPE) decoded to each bin's middle (`reconstruction=0`) or moved toward "
     "the likelier neighbouring bin by 0.5-1 of the centroid offset the channel's anchor table implies (a "
     "density linear across the bin; docs/bitstream.md, cachegen \"Version 5\"). The payload is the same "
     "bytes, so the bits do not move; the KL falls 7-10% at 0.75 at every level (0.0748 -> 0.0673 at 1.83 "
     "bits, 0.0312 -> 0.0282 at 2.31, 0.0088 -> 0.0082 at 2.87). 1 is no better than 0.75 on the mean KL (a "
     "prototype found 1.5 worse, and a density exponential across the bin overshot at full strength). "
     "The effect depends on the text: scored over 512 continuation tokens instead of 128 (the same points, "
     "`docs/results/tune/reconstruction-512-scored*.csv`), the mean KL falls 9%, 6% and 2% at the three "
     "levels, python-textwrap-code's by 12-16% while apache-2.0's rises by 8-17%. "
     "Default: `reconstruction=0.75` (streams are then layout version 5); held-out: docs/results.md.",
     [_PLAN_BASE.replace("channel_weighting=off", "channel_weighting=calibrated").replace(
         "reconstruction=0", "reconstruction=" + r) + " key_space=pre_rope" for r in ("0", "0.5", "0.75", "1")],
     PLAN + [x for lv in ("2.3", "2.9", "3.5") for x in ("--plan-level", lv)]),
]

_DEFAULTS_BASE = (_PLAN_BASE.replace("channel_weighting=off", "channel_weighting=calibrated").replace(
    "reconstruction=0", "reconstruction=0.75") + " key_space=pre_rope rounding=0.5")
# A study without a title adds its rows to the table of the titled study after it (--plan-level replaces
# every point's bins, so the previous bins take a sweep of their own).
TUNE_STUDIES.append(("plans-defaults-previous", "", "", [_DEFAULTS_BASE + " " + PREVIOUS_PLAN_BINS], []))
TUNE_STUDIES.append(
    ("plans-defaults", "Layer plans from the sensitivity at the defaults",
     "The first sensitivity was measured with keys after RoPE and no channel weighting, before either became a "
     "default; with both (and centroid reconstruction) the keys' sensitivity is 2-14x lower (layer 10: 0.092 "
     "-> 0.0065), so the values' share of the bits grows. First row: the previous default bins (the first "
     "sensitivity's plan at level 2.9); then the plans of the sensitivity at the defaults at levels 2.3-3.5. "
     "Tables shipped throughout. At the previous default's bits the new plan has about 40% lower mean KL "
     "(0.0164 against 0.0282 at 2.31 bits). Default: its plan at level 2.9, the same budget as before (about "
     "0.01 bits per element more).",
     [_DEFAULTS_BASE],
     DEFAULTS_PLAN + [x for lv in ("2.3", "2.6", "2.9", "3.2", "3.5") for x in ("--plan-level", lv)]))

DEFAULTS_TEXT = (
    "The defaults that follow: `sinks=1`, `key_space=pre_rope`, `step_coding=coded`, `table_bits=10`, "
    "`profile=auto` (the model's calibration tables where they are smaller than shipped ones), "
    "`channel_weighting=calibrated` (the model's calibrated channel weighting, when it has one), "
    "`reconstruction=0.75` (values decoded toward their bin's centroid), `delta_mode=integer`, "
    "`scale=token`, and one bin count per layer: the plan at level 2.9 of the layer sensitivity measured at "
    "those defaults (below; keys 12-64 bins, finest in layers 18, 23 and 20; values 8-32, finest in layers 8, 5 "
    "and 0). With keys before RoPE and the channel weighting the keys' sensitivity falls 2-14x, so values, "
    "which first looked as if they tolerated 10 bins everywhere, take a larger share. The plan puts bits where "
    "the KL grows fastest, which is neither the paper's \"shallow layers matter more\" (the deep layers 18-23 "
    "matter most for keys, layers 0-8 for values) nor three fixed groups.")

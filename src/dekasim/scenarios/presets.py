"""Presets engineers know by name."""

#: TR 38.901 Table 7.7.3-1 example scalings of the TDL delay spread [ns].
DELAY_SPREAD_PRESETS_NS = {
    "very_short": 10.0,
    "short": 30.0,
    "nominal": 100.0,
    "long": 300.0,
    "very_long": 1000.0,
}

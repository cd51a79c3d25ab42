"""Numbers reported in the IODINE paper (for the paper column only)."""

ARI = {  # §4.1: ARI (background excluded), mean +- std over five seeds
    "clevr6": (0.989, 0.001), "multi_dsprites": (0.87, 0.04), "tetrominoes": (0.995, 0.001),
}

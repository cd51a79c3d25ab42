"""Numbers reported in the IODINE paper (for the paper column only)."""
from papers.results import Claim

ARI = {  # §4.1: ARI (background excluded), mean +- std over five seeds
    "clevr6": (0.989, 0.001), "multi_dsprites": (0.87, 0.04), "tetrominoes": (0.995, 0.001),
}

CLAIMS = [  # the results of record (reports/README.md): ARI-FG after the training T updates
    Claim(d, "ARI-FG", m, s, 5, "§4.1", "metrics.ari_fg") for d, (m, s) in ARI.items()
]

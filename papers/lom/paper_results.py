"""Numbers reported in the LOM paper (ICLR 2022 submission), with where they come from (for the paper column only)."""
from papers.results import Claim

RUNS = 3  # Tables 2-3 captions: mean +- std over three training runs
ABLATION_RUNS = 5  # App. A.5: five random seeds (Fig. 6, box plots only: no numbers printed)
FID_SAMPLES = 10_000  # §4: 10K real and generated samples, following Engelcke et al. (2021)
S_ACC_HAND_LABELLED = 100  # §4: 100 generated ShapeStacks images per model, labelled by hand
TEMPERATURE = 0.8  # §4.1: tau for every LOM result

# (mean, std) exactly as printed; std None where the paper prints none (S-Acc has none), the entry None for "-".
# ARI-FG is a fraction, S-Acc a percentage.
TABLE2_MODELS = ("GNM", "GEN", "GENv2-MoG", "EMORL", "LOM-EMORL", "LOM-EMORL-n.s.p.", "GENv2-G", "LOM-GENv2-G")
TABLE2 = {  # Table 2, mean +- std over three training runs; n.s.p. = no sum pooling
    "GNM": {"clevr6": {"fid": (27.5, 1), "ari_fg": (0.97, 0.01)}, "objects_room": {"fid": (51.6, 5), "ari_fg": (0.23, 0.05)},
            "shapestacks": {"fid": (49.3, 2), "ari_fg": (0.37, 0.07), "s_acc": (100, None)}},
    "GEN": {"clevr6": None, "objects_room": {"fid": (62.8, 3), "ari_fg": (0.63, 0.03)},
            "shapestacks": {"fid": (186.8, 18), "ari_fg": (0.70, 0.05), "s_acc": (0, None)}},
    "GENv2-MoG": {"clevr6": {"fid": (61.0, 3), "ari_fg": (0.98, 0.00)}, "objects_room": {"fid": (52.6, 3), "ari_fg": (0.84, 0.01)},
                  "shapestacks": {"fid": (112.7, 3), "ari_fg": (0.81, 0.00), "s_acc": (59, None)}},
    "EMORL": {"clevr6": {"fid": (244.0, 19), "ari_fg": (0.96, 0.02)}, "objects_room": {"fid": (178.3, 27), "ari_fg": (0.47, 0.22)},
              "shapestacks": {"fid": (258.4, 57), "ari_fg": (0.60, 0.04), "s_acc": (0, None)}},
    "LOM-EMORL": {"clevr6": {"fid": (52.0, 6), "ari_fg": (0.96, 0.01)}, "objects_room": {"fid": (67.4, 3), "ari_fg": (0.51, 0.25)},
                  "shapestacks": {"fid": (132.2, 15), "ari_fg": (0.60, 0.04), "s_acc": (76, None)}},
    "LOM-EMORL-n.s.p.": {"clevr6": None, "objects_room": None,
                         "shapestacks": {"fid": (139.1, 10), "ari_fg": (0.62, 0.08), "s_acc": (40, None)}},
    "GENv2-G": {"clevr6": {"fid": (61.0, 3), "ari_fg": (0.98, 0.00)}, "objects_room": {"fid": (87.6, 4), "ari_fg": (0.80, 0.00)},
                "shapestacks": {"fid": (115.3, 6), "ari_fg": (0.68, 0.02), "s_acc": (42, None)}},
    "LOM-GENv2-G": {"clevr6": {"fid": (62.3, 8), "ari_fg": (0.96, 0.00)}, "objects_room": {"fid": (63.1, 8), "ari_fg": (0.79, 0.00)},
                    "shapestacks": {"fid": (91.6, 3), "ari_fg": (0.68, 0.02), "s_acc": (82, None)}},
}
# Table 2's footnote: the three Objects Room ARI-FG runs behind the daggered entries.
TABLE2_ARI_PER_SEED = {"EMORL": (0.60, 0.64, 0.16), "LOM-EMORL": (0.69, 0.70, 0.16)}
TABLE3 = {  # Table 3, CLEVR6, mean +- std over three runs
    "LOM-EMORL": {"fid": (52.0, 6), "ari_fg": (0.96, 0.01), "disentanglement": (0.48, 0.04),
                  "completeness": (0.45, 0.06), "informativeness": (0.25, 0.03)},
    "NVAE": {"fid": (28.3, 4), "ari_fg": None, "disentanglement": (0.19, 0.0), "completeness": (0.16, 0.0),
             "informativeness": (0.0, 0.0)},
}
NOT_BUILT = ("GNM", "GEN", "NVAE")

# Our configs for the LOM rows
OURS_TABLE2 = {
    ("LOM-EMORL", "clevr6"): "clevr6", ("LOM-EMORL", "objects_room"): "objects_room",
    ("LOM-EMORL", "shapestacks"): "shapestacks", ("LOM-EMORL-n.s.p.", "shapestacks"): "shapestacks_nsp",
    ("LOM-GENv2-G", "clevr6"): "clevr6_genv2_g", ("LOM-GENv2-G", "objects_room"): "objects_room_genv2_g",
    ("LOM-GENv2-G", "shapestacks"): "shapestacks_genv2_g",
}

FID, ARI, SACC = "metrics.fid", "metrics.ari_fg_decoder", "s_acc.accuracy"
FID_LABEL = "FID at tau 0.8 (paper: 10,000 samples; ours: 10,000 paper profile, 2,000 short)"
SACC_LABEL = "S-Acc (%), learned judge (paper: 100 labelled by hand; ours: 1,000 samples, reports/judges)"
ARI_LABEL = "ARI-FG (ours: 320 test scenes)"
DCI_LABEL = "DCI {} (EMORL Table 3's code and factors, its paper's estimator; ours: 320 test scenes)"

CLAIMS = [  # the results of record (reports/README.md): paper's number, where ours is in metrics.json
    *(Claim(ours, FID_LABEL, *TABLE2[model][d]["fid"], RUNS, f"Table 2 ({model})", FID)
      for (model, d), ours in OURS_TABLE2.items()),
    *(Claim(ours, ARI_LABEL, *TABLE2[model][d]["ari_fg"], RUNS, f"Table 2 ({model})", ARI)
      for (model, d), ours in OURS_TABLE2.items()),
    *(Claim(ours, SACC_LABEL, *TABLE2[model]["shapestacks"]["s_acc"], RUNS, f"Table 2 ({model})", SACC, 100)
      for (model, d), ours in OURS_TABLE2.items() if d == "shapestacks"),
    *(Claim("clevr6", DCI_LABEL.format(k), *TABLE3["LOM-EMORL"][k], RUNS, "Table 3 (LOM-EMORL)", f"dci.{k}")
      for k in ("disentanglement", "completeness", "informativeness")),
]

"""Numbers reported in the SVQ paper (Wu, Lee and Ahn), with where they come from (for the paper column only).
No seeds or standard deviations are printed: one run per entry."""
from papers.results import Claim

GENERATION_HAND_LABELLED = 128  # §5.1.1: 128 samples per model inspected by hand
PRIOR_STEPS, SVQ_STEPS = 1_000_000, 400_000  # App. B.1

# Table 2: FID and generation accuracy (%) on the 2D Sprites sets; our config names as keys
TABLE2 = {
    "sprites3": {"fid": {"VQ-VAE": 14.81, "dVAE": 7.26, "SVQ": 6.61},
                 "generation_accuracy": {"VQ-VAE": 28.91, "dVAE": 75.78, "SVQ": 75.00}},
    "sprites4": {"fid": {"VQ-VAE": 26.35, "dVAE": 19.15, "SVQ": 17.93},
                 "generation_accuracy": {"VQ-VAE": 21.88, "dVAE": 62.50, "SVQ": 66.41}},
    "sprites4_bg": {"fid": {"VQ-VAE": 58.14, "dVAE": 66.08, "SVQ": 58.50},
                    "generation_accuracy": {"VQ-VAE": 19.53, "dVAE": 30.47, "SVQ": 42.19}},
}
# Table 3: FID on the CLEVR sets
TABLE3 = {
    "clevr_easy": {"GENESIS-v2": 115.56, "VQ-VAE": 57.06, "dVAE": 40.30, "SVQ": 32.50},
    "clevr_hard": {"GENESIS-v2": 93.01, "VQ-VAE": 73.33, "dVAE": 65.89, "SVQ": 43.12},
    "clevr_tex": {"GENESIS-v2": 225.08, "VQ-VAE": 178.59, "dVAE": 112.80, "SVQ": 84.52},
}
# Table 4 (downstream odd-one-out: steps to 98 % ID accuracy, OOD accuracy %)
TABLE4 = {"dVAE": (37_000, 26.7), "VQ-VAE Indices": (77_000, 24.0), "SysBinder": (27_000, 67.6),
          "SVQ Indices": (77_000, 46.8), "SVQ Codebook": (27_000, 99.1)}
# Table 5 (CLEVR-Hard property comparison: ID, OOD accuracy %)
TABLE5 = {"dVAE": (27.52, 19.87), "VQ-VAE Indices": (24.53, 17.74), "VQ-VAE Codebook": (23.73, 18.80),
          "SysBinder": (79.60, 70.09), "SVQ Indices": (68.21, 64.53), "SVQ Codebook": (75.86, 71.15)}

# The results of record (reports/README.md): Tables 2-3's SVQ, dVAE, VQ-VAE and GENESIS-v2 columns. One run per
# entry in the paper (no std, seeds None).
FID_LABEL = "FID (paper: N not stated, the official dump writes 1,000; ours: 10,000 paper profile, 2,000 short)"
ACC_LABEL = ("generation accuracy (%), learned judge (paper: 128 labelled by hand; ours: 1,000 samples, "
             "reports/judges)")
COLUMNS = {"SVQ": "svq", "dVAE": "dvae", "VQ-VAE": "vqvae", "GENESIS-v2": "genesis"}  # model -> metrics.generative.<key>
CLAIMS = [
    *(Claim(d, FID_LABEL, v["fid"][model], None, None, f"Table 2 ({model})", f"metrics.generative.{key}.fid.fid")
      for d, v in TABLE2.items() for model, key in COLUMNS.items() if model in v["fid"]),
    *(Claim(d, ACC_LABEL, v["generation_accuracy"][model], None, None, f"Table 2 ({model})",
            f"metrics.generative.{key}.generation_accuracy.accuracy", 100)
      for d, v in TABLE2.items() for model, key in COLUMNS.items() if model in v["generation_accuracy"]),
    *(Claim(d, FID_LABEL, v[model], None, None, f"Table 3 ({model})", f"metrics.generative.{key}.fid.fid")
      for d, v in TABLE3.items() for model, key in COLUMNS.items() if model in v),
    *(Claim("sprites_quadrant_downstream", "steps to 98 % ID validation accuracy (ours checked every 1,000)", steps, None, None,
            f"Table 4 ({name})", f"metrics.downstream.{name}.steps_to_target") for name, (steps, _) in TABLE4.items()),
    *(Claim("sprites_quadrant_downstream", "OOD accuracy (%) (ours: at the last step)", ood, None, None, f"Table 4 ({name})",
            f"metrics.downstream.{name}.ood_accuracy", 100) for name, (_, ood) in TABLE4.items()),
    *(Claim("clevr_hard_downstream", f"{part} accuracy (%) (ours: at the last step)", value, None, None, f"Table 5 ({name})",
            f"metrics.downstream.{name}.{part.lower()}_accuracy", 100)
      for name, pair in TABLE5.items() for part, value in zip(("ID", "OOD"), pair)),
]

"""Generative priors. Each family arrives with its issue; ``classical`` means no learned prior."""

#: Prior families this installation can use, with a one-line description each.
AVAILABLE = {"classical": "no learned prior: biharmonic, Wiener, Richardson-Lucy, TV, bicubic, pseudo-inverse"}

#: Families that are planned but not built yet (the command line names them in its error).
PLANNED = ("ddpm", "vae", "gan", "flow", "pixelcnn", "gaussian")

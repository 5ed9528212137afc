# validation stage (see README). Rules only; helper functions live in common.smk or src/attnlab.

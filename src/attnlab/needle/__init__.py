"""Needle-in-a-haystack: retrieval accuracy and answer-vs-noise attention by needle depth.

The Differential Transformer paper's key-information-retrieval analysis (Ye et al. 2025,
"Differential Transformer", ICLR, Table 3): magic-number needles ("The magic number for
<city> is <n>.") are hidden at a depth of a filler haystack, a question asks for one of them,
and we measure (1) whether greedy decoding returns the number and (2) which fraction of the
answer-producing query's attention lands on the target needle versus on the haystack.

Modules (none imported here, so importing the package stays cheap):

* :mod:`attnlab.needle.resources` — filler sentences, cities and templates from ``resources/needle``;
* :mod:`attnlab.needle.items` — episodes with recorded character spans; probe items sized in tokens,
  pretraining-corpus episodes sized in characters;
* :mod:`attnlab.needle.probe` — per model: accuracy and per-layer/head attention masses;
* :mod:`attnlab.needle.aggregate` — the depth table (Table-3 layout), figure and verdict;
* :mod:`attnlab.needle.cli` — ``attnlab needle corpus|probe|table|figure``.
"""

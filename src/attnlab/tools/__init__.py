"""Researcher conveniences: prefetch for offline compute nodes, ``attnlab doctor``, ``attnlab generate``.

Modules (imported lazily by the CLI; nothing here imports torch at import time):

* :mod:`attnlab.tools.hfcache` — where the Hugging Face cache is and what it holds (offline checks).
* :mod:`attnlab.tools.prefetch` — download every hub model / dataset of a config into the cache.
* :mod:`attnlab.tools.doctor` — environment check.
* :mod:`attnlab.tools.generate` — interactive greedy inference, noise preview, attention shares.
* :mod:`attnlab.tools.plugins` — import the config's ``plugins:`` modules in every job.
"""

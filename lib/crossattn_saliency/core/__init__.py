"""The ground floor: configuration and plumbing that every wing uses.

* ``config``: paths (repository, assets, results, caches) and the run profiles (``smoke``,
  ``default``, ``paper``): the one place where configuration and its defaults live;
* ``files``: atomic file I/O (JSON, ``.npz``): a file appears whole or not at all;
* ``progress``: progress bars and one-line news for the terminal behind a notebook.

Imports nothing of the package; every wing may import it.
"""

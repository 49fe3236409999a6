"""Runtime glue between the plugin and basicsr's entry points: the one repair of the released basicsr
(``compat``, imported first, standard library only), process groups (``dist``), exact resume
(``resume``) and what the plugin's own entries change in basicsr's pipeline (``pipeline``).

Nothing is imported here: ``compat`` must load before torch or basicsr.
"""

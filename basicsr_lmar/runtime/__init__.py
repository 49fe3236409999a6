"""Runtime glue between the plugin and basicsr's entry points: the one place that repairs the released
basicsr and quiets two of its imports (``compat``, imported first, standard library only), process groups
(``dist``), exact resume (``resume``) and what the plugin's own entries change in basicsr's pipeline
(``pipeline``).

Nothing is imported here: ``compat`` must load before torch or basicsr.
"""

"""What the plugin's command-line tools share: how errors end a run (:mod:`.errors`) and how a folder of
images is read, checked and written (:mod:`.folders`)."""

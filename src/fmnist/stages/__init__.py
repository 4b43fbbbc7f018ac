"""One module per DVC stage, each with run(): reads its inputs, calls the core, writes its
outputs."""

"""The roof: the tools that operate the suite (the `emsupply` command, the supervisor of `up`,
seed, import/export, the storm scenario, the data-set generator). It may import every service;
nothing imports it."""

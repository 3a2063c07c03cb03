"""Adapters to other toolkits; each module imports its toolkit, an optional dependency, itself
(`seqpo.integrations.simuleval` needs `pip install -e '.[simuleval]'`)."""

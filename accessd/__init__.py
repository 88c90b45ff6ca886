"""accessd: the access layer of a data-science pipeline, run as a Mesos framework."""

__version__ = "0.1.0"

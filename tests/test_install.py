"""The install works: pymesos imports with the rebuilt C http-parser, and the command runs."""

import subprocess
import sys


def test_pymesos_uses_the_c_http_parser():
    import http_parser.http
    import http_parser.parser
    import pymesos

    assert pymesos.MesosSchedulerDriver
    assert http_parser.http.HttpParser is http_parser.parser.HttpParser


def test_accessd_command_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "accessd.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "localmesos" in out

"""The `xenvol` command (operators' CLI). Subcommands arrive with the client issue."""
import sys

from . import __version__


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["version"], ["--version"]):
        print("xenvol client %s" % __version__)
        return 0
    sys.stderr.write("usage: xenvol version\n")
    return 2

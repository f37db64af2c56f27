"""Turn the line data the simulator's dom0 coverage hook leaves (<data file>.dom0.*.json,
simulator/xapisim/plugins.py _coverage_hook) into one coverage data file beside them, for
`coverage combine` (which maps their /etc/xapi.d/plugins paths through .coveragerc [paths]).

usage: python tools/dom0_coverage.py <data file>   (the COVERAGE_FILE of the run)"""

import glob
import json
import os
import sys

from coverage import CoverageData


def main(data_file):
    found = sorted(glob.glob(glob.escape(data_file) + ".dom0.*.json"))
    lines = {}
    for path in found:
        with open(path) as fh:
            for name, numbers in json.load(fh).items():
                lines.setdefault(name, set()).update(numbers)
    if lines:
        data = CoverageData(basename=data_file, suffix="dom0")
        data.add_lines(dict((name, sorted(n)) for name, n in lines.items()))
        data.write()
    # A run killed while it wrote its data left only a .part file.
    for path in found + glob.glob(glob.escape(data_file) + ".dom0.*.json.part"):
        os.remove(path)
    print("dom0 coverage: %d plugin runs, %d files" % (len(found), len(lines)))


if __name__ == "__main__":
    main(sys.argv[1])

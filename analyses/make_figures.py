"""The paper-style figures (PNG + SVG) and the HTML report, from the result tables that exist.

    python analyses/make_figures.py --config analyses/configs/demo.yaml [--figures-only]
"""

import argparse

from sae_eeg.pipeline.reporting import make_figures, make_report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="pipeline config (YAML)")
    parser.add_argument("--figures-only", action="store_true", help="draw the figures, skip the report")
    args = parser.parse_args(argv)
    if args.figures_only:
        drawn = make_figures(args.config)
        print(f"{len(drawn)} figures: {', '.join(str(p) for p in drawn.values())}")
    else:
        print(f"Report: {make_report(args.config)}")


if __name__ == "__main__":
    main()

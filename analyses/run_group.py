"""Every subject's analyses (those whose inputs changed), then the group statistics.

    python analyses/run_group.py --config analyses/configs/demo.yaml [--scheduler local]

Brings every task the group statistics need up to date (extraction, SAEs,
preprocessing, per-subject analyses): a task reruns exactly when what it reads changed.
"""

import argparse

from sae_eeg.pipeline import load_pipeline_config, run_pipeline


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="pipeline config (YAML)")
    parser.add_argument("--scheduler", default=None,
                        help="'serial', 'local' (Dask) or tcp://HOST:PORT (default: the config's)")
    args = parser.parse_args(argv)
    run_pipeline(args.config, ("group",), scheduler=args.scheduler, verbose=True)
    cfg = load_pipeline_config(args.config, check_files=False)
    print(f"Group tables in {cfg.output_dir / 'alignment'}/layer_*/group")


if __name__ == "__main__":
    main()

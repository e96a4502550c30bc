"""Every subject's analyses (those not done yet), then the group statistics.

    python analyses/run_group.py --config analyses/configs/demo.yaml [--scheduler local]
"""

import argparse

from sae_eeg.pipeline import run_stages
from sae_eeg.pipeline.config import load_pipeline_config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="pipeline config (YAML)")
    parser.add_argument("--scheduler", default=None, help="Dask: 'local' or tcp://HOST:PORT (default: config's)")
    args = parser.parse_args(argv)
    cfg = load_pipeline_config(args.config)
    if args.scheduler:
        cfg = cfg.model_copy(update={"scheduler": args.scheduler})
    run_stages(cfg, verbose=True)
    print(f"Group tables in {cfg.output_dir / 'alignment'}/layer_*/group")


if __name__ == "__main__":
    main()

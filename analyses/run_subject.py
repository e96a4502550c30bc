"""One subject's alignment analyses.

    python analyses/run_subject.py --config analyses/configs/demo.yaml --subject 03

Runs the stages the subject needs (SAE, trajectories, preprocessing, then the
per-subject analyses of every configured layer), skipping what is already done.
"""

import argparse

from sae_eeg.pipeline import run_stages
from sae_eeg.pipeline.config import load_pipeline_config
from sae_eeg.pipeline.stages import EXTRACT, subject_task


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="pipeline config (YAML)")
    parser.add_argument("--subject", required=True, help="subject id, as in the manifest")
    args = parser.parse_args(argv)
    cfg = load_pipeline_config(args.config)
    run_stages(cfg, EXTRACT + ("preprocess",), verbose=True)
    subject_task(cfg.model_dump(mode="json"), args.subject)
    print(f"Tables in {cfg.output_dir / 'alignment'}/layer_*/subjects/{args.subject}")


if __name__ == "__main__":
    main()

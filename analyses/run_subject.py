"""One subject's alignment analyses.

    python analyses/run_subject.py --config analyses/configs/demo.yaml --subject 03

Runs the tasks the subject needs (activations, SAEs, trajectories, the subject's
preprocessing, then its analyses of every configured layer), skipping every task
whose inputs are unchanged.
"""

import argparse

from sae_eeg.pipeline import load_pipeline_config, run_pipeline


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="pipeline config (YAML)")
    parser.add_argument("--subject", required=True, help="subject id, as in the manifest")
    args = parser.parse_args(argv)
    run_pipeline(args.config, ("subject",), subjects=[args.subject], verbose=True)
    cfg = load_pipeline_config(args.config, check_files=False)
    print(f"Tables in {cfg.output_dir / 'alignment'}/layer_*/subjects/{args.subject}")


if __name__ == "__main__":
    main()

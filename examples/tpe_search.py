"""Bayesian optimisation (TPE) on the NYC flights data, with early stopping.

    .venv/bin/python examples/tpe_search.py [--rows 60000] [--epochs 3] [--models 6]

``parallelism=2`` models train at a time; whenever one is done its result is told to Optuna's
TPE sampler before the next configuration is chosen. ``MedianStopping`` stops a model whose
best validation loss so far is worse than the median of the other models at the same epoch, so
poor configurations give their worker back early. The model, the Spark session and the printed
report are in _common.py; the data in flights.py.
"""

from __future__ import annotations

from _common import LABEL, estimator_gen_fn, parse_args, report, setup


def main() -> None:
    args = parse_args(__doc__, epochs=3, models=6)  # stopping needs a few epochs to matter
    from cerebro.tune import MedianStopping, TPESearch, hp_loguniform, hp_qloguniform, hp_uniform

    spark, backend, store, df = setup(args, "cerebro-tpe-search")
    search = TPESearch(
        backend,
        store,
        estimator_gen_fn,
        {
            "lr": hp_loguniform(1e-4, 3e-2),
            "units": hp_qloguniform(8, 128, 8),
            "dropout": hp_uniform(0.0, 0.3),
        },
        num_models=args.models,
        parallelism=2,
        num_epochs=args.epochs,
        evaluation_metric="loss",  # val_loss, minimised; the stopper follows this direction
        stopper=MedianStopping(grace_epochs=1, min_models=2),
        validation=0.25,
        feature_columns=["features"],
        label_columns=[LABEL],
        seed=args.seed,
    )
    result = search.fit(df)
    report(result, store)
    stopped = [m.model_id for m in result.models.values() if m.status == "stopped"]
    print(f"Stopped early by MedianStopping: {', '.join(stopped) or 'none'}")
    spark.stop()


if __name__ == "__main__":
    main()

"""Random search on the NYC flights data: configurations drawn from continuous ranges.

    .venv/bin/python examples/random_search.py [--rows 60000] [--epochs 2] [--models 4]

Each hyperparameter is drawn from its own seeded stream, so the same ``--seed`` trains the same
configurations and adding a hyperparameter does not change the others' draws. The model, the
Spark session and the printed report are in _common.py; the data in flights.py.
"""

from __future__ import annotations

from _common import LABEL, estimator_gen_fn, parse_args, report, setup


def main() -> None:
    args = parse_args(__doc__, models=4)
    from cerebro.tune import RandomSearch, hp_choice, hp_loguniform, hp_quniform, hp_uniform

    spark, backend, store, df = setup(args, "cerebro-random-search")
    search = RandomSearch(
        backend,
        store,
        estimator_gen_fn,
        {
            # Log-uniform bounds are the values themselves: lr between 1e-4 and 3e-2.
            "lr": hp_loguniform(1e-4, 3e-2),
            # A multiple of 16 between 16 and 128 (ints, as min, max and q are ints).
            "units": hp_quniform(16, 128, 16),
            "dropout": hp_uniform(0.0, 0.3),
            "batch_size": hp_choice([128, 512]),
        },
        num_models=args.models,
        num_epochs=args.epochs,
        evaluation_metric="loss",  # val_loss, minimised
        validation=0.25,
        feature_columns=["features"],
        label_columns=[LABEL],
        seed=args.seed,
    )
    result = search.fit(df)
    report(result, store)
    spark.stop()


if __name__ == "__main__":
    main()

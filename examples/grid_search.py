"""Grid search on the NYC flights data: every combination of the listed values.

    .venv/bin/python examples/grid_search.py [--rows 60000] [--epochs 2] [--workers 2]

Four MLPs (2 widths x 2 learning rates) train together with Model Hopper Parallelism on local
Spark; models are ranked by validation accuracy (maximised). The model, the Spark session and
the printed report are in _common.py; the data in flights.py.
"""

from __future__ import annotations

from _common import LABEL, estimator_gen_fn, parse_args, report, setup


def main() -> None:
    args = parse_args(__doc__)
    from cerebro.tune import GridSearch, hp_choice

    spark, backend, store, df = setup(args, "cerebro-grid-search")
    search = GridSearch(
        backend,
        store,
        estimator_gen_fn,
        # Grid search takes hp_choice only: it trains the Cartesian product, here 2 x 2.
        {"units": hp_choice([16, 64]), "lr": hp_choice([1e-3, 1e-2])},
        num_epochs=args.epochs,
        evaluation_metric="accuracy",  # val_accuracy, maximised
        validation=0.25,
        feature_columns=["features"],
        label_columns=[LABEL],
        seed=args.seed,
    )
    result = search.fit(df)  # prepares the data in the store once, then trains all four
    report(result, store)

    # The best model is a Spark ML Transformer: it adds a `delayed__output` column.
    predictions = result.get_best_model().transform(df.limit(5))
    print("\nPredictions of the best model:")
    predictions.select(LABEL, f"{LABEL}__output").show()
    spark.stop()


if __name__ == "__main__":
    main()

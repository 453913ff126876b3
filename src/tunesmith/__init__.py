"""tunesmith: from raw domain data to a fine-tuned, evaluated, deployed model."""

__version__ = "0.1.0"

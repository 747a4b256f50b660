"""The dataset in its forms: CelebA's files and sources, the image archive, splits and Parquet shards."""

"""Spark entrypoint of the RAG preprocessing job.

    spark-submit spark_jobs/preprocess.py --input s3://docs/landing --output s3://docs/processed ...

takes exactly the arguments of `llmops preprocess` (the SparkApplication's `arguments`), so a run on
Kubernetes and `llmops preprocess` on a laptop are the same code: `llmops.rag.job.run_preprocess`.
Under spark-submit the session uses the submission's master (the Spark Operator's executors).
"""

import sys

from llmops.cli import main

if __name__ == "__main__":
    sys.exit(main(["preprocess", *sys.argv[1:]]))

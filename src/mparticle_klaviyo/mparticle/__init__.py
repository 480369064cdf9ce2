"""Input side: mParticle batches and Firehose messages, decoded and normalised."""

"""Metering: rate limits on tool and model calls (`limits`), their counters in this process
(`counters`) or in Redis (`redis`), and the RateLimit headers that report them (`headers`)."""

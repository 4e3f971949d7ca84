"""The production runtime: Faust workers on Apache Kafka running the same Engine as replay."""

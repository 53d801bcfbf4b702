"""DataContractGate: quarantines the logged rows that break the data contract, before ExampleGen."""

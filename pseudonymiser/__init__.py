"""One operator of the oblivious pseudonymisation (imports as ``olievlek.pseudonymiser``)."""

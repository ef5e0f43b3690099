"""An independent witness of the broker's log (imports as ``olievlek.witness``)."""

"""Reading results: scores and their uncertainty, the report, the live plot, the TensorBoard export."""

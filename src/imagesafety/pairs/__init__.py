"""Counterfactual safety pairs: edit plans, editors, verification, generation into a pair dataset."""

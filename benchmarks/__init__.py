"""`make bench`: our HL7 figures side by side with the baselines, each measured in a fresh process."""

"""The Modality Worklist SCP (MWL C-FIND) and the Modality Performed Procedure Step SCP (N-CREATE, N-SET)."""

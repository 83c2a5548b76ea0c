"""Methods: init / e_step / m_step on tensors, no file I/O."""

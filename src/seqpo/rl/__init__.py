"""SeqPO-SiMT reinforcement learning: rewards and advantages (rollouts and the GRPO loop to come)."""

"""Safe rollout: how a promoted candidate meets live traffic (blue/green, canary, shadow),
what each step is judged on, and what a rollback undoes."""

"""The glue between Hydra and the code: resolvers, what Hydra knows about the job, the value
types a config must hold, and whether Lightning relaunches the script."""

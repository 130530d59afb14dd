# %% [markdown]
# # SGD basics (placeholder)
# Test $x^2$ {cite}`haink2023hessian`.

# %%
import helpers
cfg = helpers.setup("01_sgd_basics", quick={"n": 1}, paper={"n": 2})
import tensorflow as tf
print(tf.reduce_sum(tf.ones(3)).numpy())

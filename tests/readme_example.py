"""README.md's "use a norm in your own JAX model" example, as a function (tested by
tests/test_readme_example.py). The body of main() (minus its return) is README.md's marked block."""


def main():
    import jax
    import jax.numpy as jnp
    import normlab

    def model(params, x):
        h = x @ params["w1"]                                    # dense (N, 32), no bias: BN has b1
        h = jax.nn.relu(normlab.batch_norm(h, params["g1"], params["b1"]))
        h = h.reshape(-1, 4, 8)                                 # (N, 4 positions, 8 channels), channels-last
        h = jax.nn.relu(normlab.group_norm(h, params["g2"], params["b2"], num_groups=2))
        return h.reshape(-1, 32) @ params["w2"]

    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    params = {"w1": jax.random.normal(k1, (10, 32)) / 10 ** 0.5, "g1": jnp.ones(32), "b1": jnp.zeros(32),
              "g2": jnp.ones(8), "b2": jnp.zeros(8), "w2": jax.random.normal(k2, (32, 1)) / 32 ** 0.5}
    x = jax.random.normal(k3, (64, 10))
    y = jnp.sin(x.sum(1, keepdims=True))

    @jax.jit
    def step(params):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((model(p, x) - y) ** 2))(params)
        return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), loss

    losses = []
    for _ in range(100):
        params, loss = step(params)
        losses.append(float(loss))
    return losses


if __name__ == "__main__":
    losses = main()
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f}")

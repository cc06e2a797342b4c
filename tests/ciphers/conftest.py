import numpy as np, pytest
@pytest.fixture(scope="session")
def real_photo():
    from skimage import data
    return np.ascontiguousarray(data.astronaut()[:224, 100:324])

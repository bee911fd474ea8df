"""Learning through the planner.

Generate data from a problem's true dynamics (`generate`), identify a model of
them (`fit`, `fit_least_squares`: parametric, neural ODE or hybrid `Model`s on
single- or multiple-shooting losses), plan with the learned model
(`learned_problem`), train the model end to end through `control.plan` on the
cost its plans incur on the true system (`TrueCost`) or on an imitation loss
(`Imitation`), and close the loop with receding-horizon control (`mpc`).
"""

from ._controls import (
    Controls as Controls,
    perturb_controls as perturb_controls,
    random_controls as random_controls,
)
from ._curriculum import SegmentCurriculum as SegmentCurriculum
from ._end_to_end import (
    AbstractPlanLoss as AbstractPlanLoss,
    fit_end_to_end as fit_end_to_end,
    Imitation as Imitation,
    plan_loss as plan_loss,
    TrueCost as TrueCost,
)
from ._log_scaled import (
    log_scaled as log_scaled,
    LogScaled as LogScaled,
    resolve as resolve,
)
from ._model import (
    init_neural_vector_field as init_neural_vector_field,
    learned_problem as learned_problem,
    Model as Model,
    NeuralVectorField as NeuralVectorField,
    random_direction as random_direction,
    trainable as trainable,
)
from ._mpc import ClosedLoop as ClosedLoop, mpc as mpc, open_loop as open_loop
from ._optimiser import split_optimiser as split_optimiser
from ._rollout import rollout_error as rollout_error
from ._scaling import Scaling as Scaling
from ._simulate import (
    AbstractSimulator as AbstractSimulator,
    evaluate as evaluate,
    FixedStepRK4 as FixedStepRK4,
    simulate as simulate,
    Simulator as Simulator,
)
from ._smoothness import ControlSmoothness as ControlSmoothness
from ._sysid import (
    AbstractSysIdLoss as AbstractSysIdLoss,
    fit as fit,
    fit_least_squares as fit_least_squares,
    MultipleShootingLoss as MultipleShootingLoss,
    SingleShootingLoss as SingleShootingLoss,
)
from ._trajectories import (
    generate as generate,
    initial_states as initial_states,
    split as split,
    Trajectories as Trajectories,
)

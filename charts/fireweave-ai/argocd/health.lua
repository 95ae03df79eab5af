-- Argo CD health of fireweave-ai's Dataset, TrainingRun and ModelServing (group ai.fireweave.io).
-- The operator writes kstatus conditions (exactly one of Ready, Reconciling, Stalled is True), stamps them
-- with the generation they describe, and a phase. Argo CD runs this with `obj` set to the live resource.
-- Written for Lua 5.1 (Argo CD's interpreter) and tested with Debian's lua5.1 and lua5.4.
local hs = {status = "Progressing", message = ""}

local function condition(conditions, wanted)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

local function describe(c)
  if c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return c.reason or ""
end

local status = obj.status
if status == nil then
  hs.message = "Waiting for the operator to reconcile this " .. obj.kind
  return hs
end

-- A status written for an older spec says nothing about the current one: the operator has not acted on the
-- change yet, whatever the conditions say.
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local ready = condition(status.conditions, "Ready")
local reconciling = condition(status.conditions, "Reconciling")
local stalled = condition(status.conditions, "Stalled")

if (stalled ~= nil and stalled.status == "True") or status.phase == "Failed" then
  hs.status = "Degraded"
  if stalled ~= nil and stalled.status == "True" then
    hs.message = describe(stalled)
  else
    hs.message = obj.kind .. " failed"
  end
  return hs
end

-- A ModelServing scaled to zero serves nothing on purpose.
if obj.kind == "ModelServing" and obj.spec ~= nil and obj.spec.replicas == 0 then
  hs.status = "Suspended"
  hs.message = "Scaled to zero replicas"
  return hs
end

if ready ~= nil and ready.status == "True" then
  if ready.observedGeneration ~= nil and generation ~= nil and ready.observedGeneration < generation then
    hs.message = "Waiting for the operator to observe generation " .. generation
    return hs
  end
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

-- Reconciling: a Job runs, a rollout progresses, or a dependency is awaited (WaitingForDataset,
-- WaitingForTrainingRun). All of these move on without a person, so they are Progressing.
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = describe(reconciling)
  return hs
end

if status.phase ~= nil then
  hs.message = "Phase " .. status.phase
else
  hs.message = "Waiting for conditions"
end
return hs

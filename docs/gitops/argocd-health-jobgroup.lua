-- Argo CD health check for ferry.dev/JobGroup.
--
-- Install: docs/gitops/argocd-cm.yaml (key resource.customizations.health.ferry.dev_JobGroup).
-- Why each rule is what it is: docs/gitops.md, "Argo CD health".
-- Tested by tests/unit/test_gitops_health.py, which runs this file the way Argo CD does.
--
-- Plain Lua 5.1 for gopher-lua, without the string library (Argo CD does not load it
-- for custom health scripts): only .., tostring, ipairs and comparisons below.
--
-- Same precedence as the ExportJob check:
--   no status / no observedGeneration           Progressing  waiting for the operator
--   being deleted                               Progressing
--   metadata.generation > observedGeneration    Progressing  operator has not seen the edit
--   condition Ready=False (e.g. MemberNotFound) Degraded     reason: message
--   condition Ready=Unknown                     Progressing
--   condition Stalled=True                      Degraded
--   a group run is active                       Healthy      which member runs
--   phase Suspended (spec.suspend)              Suspended
--   last group run Failed or PartiallySucceeded Degraded     the run's message + what to do
--   otherwise                                   Healthy

local hs = {}

local function find_condition(status, wanted)
  if status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == wanted then
      return condition
    end
  end
  return nil
end

local function explain(condition)
  local reason = condition.reason or condition.type
  if condition.message ~= nil and condition.message ~= "" then
    return reason .. ": " .. condition.message
  end
  return reason
end

local function describe_run(status, run)
  local text = "Group run " .. tostring(run.id) .. " is " .. tostring(run.phase)
  if run.message ~= nil and run.message ~= "" then
    text = text .. ": " .. run.message
  elseif status.current ~= nil then
    text = text .. ", member " .. status.current
  end
  return text
end

local function describe_last(last)
  local text = "Last group run " .. tostring(last.id) .. " " .. tostring(last.phase)
  if last.message ~= nil and last.message ~= "" then
    text = text .. ": " .. last.message
  end
  return text
end

local metadata = obj.metadata or {}
local name = metadata.name or "GROUP"
local status = obj.status

if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator: the JobGroup has no status yet"
  return hs
end

if metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Being deleted"
  return hs
end

if metadata.generation ~= nil and status.observedGeneration < metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(metadata.generation)
    .. " (status is for generation " .. tostring(status.observedGeneration) .. ")"
  return hs
end

local ready = find_condition(status, "Ready")
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = explain(ready)
  return hs
end
if ready ~= nil and ready.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = explain(ready)
  return hs
end

local stalled = find_condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = explain(stalled)
  return hs
end

local run = status.currentRun
if run ~= nil then
  -- Healthy, not Progressing: a group run lasts as long as all its members' exports,
  -- and Argo CD waits on Progressing resources during a sync.
  hs.status = "Healthy"
  hs.message = describe_run(status, run)
  return hs
end

local last = status.lastRun

if status.phase == "Suspended" then
  hs.status = "Suspended"
  local suspended = find_condition(status, "Suspended")
  if suspended ~= nil and suspended.message ~= nil and suspended.message ~= "" then
    hs.message = suspended.message
  else
    hs.message = "spec.suspend is true: no new scheduled group runs"
  end
  if last ~= nil then
    hs.message = hs.message .. "; last group run " .. tostring(last.id) .. " "
      .. tostring(last.phase)
  end
  return hs
end

if last ~= nil and (last.phase == "Failed" or last.phase == "PartiallySucceeded") then
  hs.status = "Degraded"
  hs.message = describe_last(last) .. " (details: kubectl ferry group describe " .. name
    .. "; resume from the first member that did not succeed: kubectl ferry group retry "
    .. name .. ")"
  return hs
end

hs.status = "Healthy"
if last ~= nil then
  hs.message = describe_last(last)
elseif status.phase == "Scheduled" then
  hs.message = "Scheduled, no group run yet"
else
  hs.message = "Drafted: never run"
end
if last == nil and status.scheduleSummary ~= nil then
  hs.message = hs.message .. " (" .. status.scheduleSummary .. ")"
end
if status.nextRunAt ~= nil then
  hs.message = hs.message .. "; next run at " .. status.nextRunAt
end
return hs
